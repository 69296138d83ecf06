"""The top layer: the commands that drive several parts.

``console.cli`` is the ``darkpool`` command line (it dispatches to the
``register(subparsers)`` of each part's ``commands`` module) and
``console.demo`` is ``darkpool demo`` (stack, feed, pipeline on Flink,
serving). They import the parts; nothing imports them (``tests/test_layers.py``).
"""
