"""Learning dynamics of alignment (Im & Li, arXiv 2403.18742): the bundled reproduction.

experiment.py   `lit-align dynamics`: Persona-shaped data with graded distinguishability (lit_align.tasks.persona),
                DPO fits with LearningDynamicsCallback (lit_align.callbacks.dynamics), the flipped-label experiment,
                Spearman correlations and plots, on the resumable stage driver (lit_align.loops.driver)
"""
