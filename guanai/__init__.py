"""Guanai (关爱): the program around the care domain.

- ``guanai.cli``: the ``guanai`` command, the composition root of every process;
- ``guanai.demo``: the demo county behind ``guanai demo``.
"""
