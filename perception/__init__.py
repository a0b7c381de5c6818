"""Perception: turns pixels and sentences into demos, goals and states for the agent.

Empty until the perception issue lands; the camera calibration it will use lives in agent/tasks/camera.py.
"""
