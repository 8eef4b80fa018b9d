#!/usr/bin/python3
"""Writes torchvision's ResNet-50 (seeded random init, 10 classes) as ONNX with BatchNormalization kept, for
bench/train.ts's 224x224 case: the ResNet-50-sized network both sides fine-tune. Not committed (about 94 MB);
the bench writes it to a temporary folder when PyTorch is present.

usage: resnet50_onnx.py OUT.onnx
"""
import sys

import torch
import torchvision

torch.manual_seed(0)
model = torchvision.models.resnet50(weights=None, num_classes=10).eval()
# torch's exporter shares equal initializers through Identity nodes; distinct BN tensors keep every one an
# initializer, as in a trained network.
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
torch.onnx.export(model, torch.zeros(1, 3, 224, 224), sys.argv[1], opset_version=13, input_names=['input'],
                  output_names=['logits'], dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}},
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
