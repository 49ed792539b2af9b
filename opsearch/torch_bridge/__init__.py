"""The torch bridge: opsearch kernels as ``torch.library`` ops, functional ops, ``nn`` modules, model swaps."""
