"""Dark Pool Liquidity Dashboard: feed, Beam pipeline, serving and offline analytics.

Runtime dependencies are pinned exactly in requirements.lock (installed by
`make setup`); the ranges below are what the code needs.
"""

from setuptools import find_packages, setup

setup(
    name="darkpool-liquidity",
    version="0.1.0",
    description="Real-time dark pool liquidity analytics: Kafka -> Apache Beam (Flink) -> Flask dashboard",
    python_requires=">=3.11,<3.12",
    # layers, bottom to top (tests/test_layers.py): darkpool; feed, pipeline, serving, analytics; console, deploy
    packages=find_packages(include=["darkpool", "darkpool.*", "feed", "feed.*", "pipeline", "pipeline.*",
                                    "serving", "serving.*", "analytics", "analytics.*",
                                    "deploy", "deploy.*", "console", "console.*"]),
    package_data={"darkpool": ["data/*.csv"], "serving": ["static/**/*", "openapi.yaml"]},
    include_package_data=True,
    install_requires=[
        "apache-beam==2.62.0",
        "apache-flink-libraries==1.19.3",
        "confluent-kafka>=2.6",
        "pyarrow>=16,<17",
        "duckdb>=1.1",
        "pandas>=2.2",
        "numpy>=1.26",
        "flask>=3.0",
        "gunicorn>=23",
        "granian>=2.8",
        "orjson>=3.10",
        "prometheus-client>=0.21",
        "matplotlib>=3.9",
        "seaborn>=0.13",
        "pyyaml>=6",
        "requests>=2.32",
    ],
    extras_require={
        "dev": ["ruff", "hypothesis", "pytest", "pytest-timeout", "playwright", "schemathesis"],
        "test": ["hypothesis", "pytest", "pytest-timeout", "playwright", "schemathesis"],
    },
    entry_points={"console_scripts": ["darkpool = console.cli:main"]},
)
