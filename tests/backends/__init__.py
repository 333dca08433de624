"""The suite's database backends: Django's own, with a quicker flush between tests.

A transactional test ends with Django's ``flush``: every table emptied, then the
``post_migrate`` signal, which creates the content types and permissions again. Here
those two tables keep their rows (the tests never change them), so the signal finds
them in place and writes nothing: about half the cost of a flush, some 800 times a
run. On PostgreSQL the rows are also deleted instead of truncated (see
``postgresql/base.py``).
"""
