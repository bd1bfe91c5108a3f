import math

from torch import nn


class Block(nn.Module):
    """Pre-LN residual block: x + fc2(relu(fc1(norm(x))))."""

    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(nn.functional.relu(self.fc1(self.norm(x))))


class ResMLP(nn.Module):
    """inp -> blocks.{i} -> LayerNorm -> out. initsweep passes num_classes and input_shape."""

    activation = "relu"  # what initsweep's gain=auto assumes

    def __init__(self, num_classes, input_shape, width=32, blocks=2):
        super().__init__()
        self.inp = nn.Linear(math.prod(input_shape), width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.out(self.norm(self.blocks(self.inp(x.flatten(1)))))
