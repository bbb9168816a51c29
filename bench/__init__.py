"""The loadsvc benchmark: loadsvc next to Locust, bare clients and wrk, on pinned cores.

``python bench/run.py`` (``make bench``) runs it; see ``bench/README.md``.
"""
