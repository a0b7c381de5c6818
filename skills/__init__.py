"""MSTT's learned components: skill tokens, the masked critic, the trajectory generator, the planner.

Everything here works on arrays and tensors; it never imports the agent side (data flows one way).
"""
