"""Layer 1: plain types and geometry (Demo, camera calibration, maze grid, task config models, file I/O).

Nothing here imports another mstt module outside agent/core.
"""
