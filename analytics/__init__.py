"""Offline analytics on the pipeline's Parquet dataset and on FINRA ATS transparency data.

- :mod:`analytics.dataset` opens the Hive-partitioned Parquet dataset in DuckDB and
  selects the panes to analyse (final panes by default);
- :mod:`analytics.tables` computes the report's tables as DuckDB queries;
- :mod:`analytics.figures` draws them (matplotlib, Agg backend, seaborn styling);
- :mod:`analytics.report` writes one self-contained HTML report plus CSV/Parquet tables;
- :mod:`analytics.finra` stores and analyses FINRA OTC transparency weekly files (read
  and validated by :mod:`darkpool.finra_file`) and compares them with the pipeline's venue shares;
- :mod:`analytics.commands` wires ``darkpool analyze`` and ``darkpool finra ...``.

Nothing happens at import time; the command line imports this package lazily.
"""
