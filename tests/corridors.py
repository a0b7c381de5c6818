"""Synthetic three-corridor data shared by the tokenizer and mask tests: noisy 2-D paths from one
start to one goal through three well-separated vias, and a tiny tokenizer config that fits them."""

from mstt.skills.tokenizer import TokenizerConfig

STEP = 0.1
START, GOAL = (0.0, 0.0), (4.0, 0.0)
# Three routes from a common start to a common goal; their middles are >= 1.5 units apart.
VIAS = ((2.0, 2.0), (2.0, 0.0), (2.0, -2.0))
NOISE = 0.02
EPISODES_PER_ROUTE = 15
HORIZON = 8
# Window starts in this x band are away from the shared start and goal, where routes must not share tokens.
MIDDLE_X = (1.0, 2.8)

TINY = TokenizerConfig(
    horizon=HORIZON,
    codebook_size=24,
    code_dim=8,
    hidden=64,
    layers=2,
    batch_size=256,
    steps=300,
    ema_decay=0.9,
    threshold_ema_dead_code=1.0,
    kmeans_init_samples=4_000,
    device="cpu",
)
