"""Research and rule selection (instance rules, operating points, scale shift, the
backbone ladder); the product does not import it, tests may use it as an oracle.
"""
