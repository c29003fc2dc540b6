"""Development helpers of the keen-sql checkout, shared by tests_py/, scripts/ and bench/.

Not part of the keen-sql wheel: services never import it.
"""
