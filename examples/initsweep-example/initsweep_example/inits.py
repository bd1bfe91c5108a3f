import math

import torch


def rademacher_(tensor, gain=math.sqrt(2.0)):
    """W_ij = +-gain / sqrt(fan_in) with random signs: every |W_ij| equal, std gain / sqrt(fan_in)."""
    fan_in = tensor[0].numel() if tensor.dim() > 1 else tensor.numel()
    signs = torch.randint(0, 2, tensor.shape, device=tensor.device).to(tensor.dtype) * 2 - 1
    with torch.no_grad():
        return tensor.copy_(signs * (gain / math.sqrt(fan_in)))
