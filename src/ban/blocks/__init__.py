"""Shared building blocks that the methods are made of, apart from the methods themselves.

Neuron noise (`noise`), the feature mask (`mask`), input-space trigger search (`trigger_search`),
feature-space trigger inversion (`feature_inversion`), BTI-DBF's trigger generator
(`btidbf_generator`, used by a detector and a mitigation), the UNet generator (`unet`) and SSIM
(`ssim`). They import nothing from `ban.detectors`, `ban.mitigations` or `ban.bench`.
"""
