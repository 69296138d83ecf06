"""Kubernetes deployment tooling (top layer): the local control plane and Flink operator the tests
run against, the manifests' renderer and policy checks, and the container images.

It may import every part below it (darkpool, feed, pipeline, serving, analytics); nothing imports it.
"""
