"""Guanai (关爱): the program around the care domain.

- ``guanai.bootstrap``: the composition root, the one place that builds a process of each kind;
- ``guanai.cli``: the ``guanai`` command, one module per command group;
- ``guanai.demo``: the demo county behind ``guanai demo``.
"""
