"""``amlit figure psi|gradient|toy``: the AM-Softmax paper's Figures 2, 5 and 4, each a PNG plus its numbers printed.
(Figure 6 comes from tested runs: ``amlit report``.)"""
