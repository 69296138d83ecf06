"""Kubernetes deployment tooling (a part, like feed or serving): the local control plane and Flink
operator the tests run against, the manifests' renderer and policy checks, and the container images.

It imports the bottom layer (darkpool) and, the one other part it may use, the pipeline it submits
and checks the manifests against (tests/test_layers.py, ALLOWED_PART_IMPORTS); only the command line
(console) imports it.
"""
