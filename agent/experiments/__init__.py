"""Layer 4: experiments (training stages, evaluation methods and controllers, offline RL, the agent loop,
benchmarks, figures), built on the worlds, the skills and perception.
"""
