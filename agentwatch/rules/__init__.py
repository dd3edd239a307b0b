"""Shipped rules files (``default.yml``): the rules a worker uses when none is configured."""
