"""Linear atomic cluster expansion (ACE): basis (:mod:`.basis`), family (:mod:`.family`), fit.

Submodules are imported on use; the family is registered as ``ace`` in :mod:`matloop.models`.
"""
