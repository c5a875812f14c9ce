import pytest
import torch

from hpcsgd.models import build_model
from hpcsgd.models.resnet import Bottleneck


@pytest.mark.parametrize("name, classes, params", [
    ("resnet50", 1000, 25_557_032),   # He et al. / torchvision
    ("resnet18", 1000, 11_689_512),
    ("resnet101", 1000, 44_549_160),
    ("lenet", 10, 431_080),           # Caffe LeNet: 20*25+20 + 50*500+50 + 800*500+500 + 5010
])
def test_parameter_counts(name, classes, params):
    model = build_model(name, num_classes=classes, in_channels=1 if name == "lenet" else 3)
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnet50_variants_differ_only_in_where_they_stride():
    caffe = build_model("resnet50", num_classes=1000, stride_in_1x1=True)
    v15 = build_model("resnet50", num_classes=1000, stride_in_1x1=False)
    b_caffe, b_v15 = caffe.stages[1][0], v15.stages[1][0]
    assert (b_caffe.conv1.stride, b_caffe.conv2.stride) == ((2, 2), (1, 1))
    assert (b_v15.conv1.stride, b_v15.conv2.stride) == ((1, 1), (2, 2))
    x = torch.randn(2, 3, 224, 224)
    assert caffe.eval()(x).shape == v15.eval()(x).shape == (2, 1000)


def test_batchnorm_settings_of_the_papers():
    model = build_model("resnet50", num_classes=1000, bn_momentum=0.05, zero_init_last_bn=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    assert all(torch.all(b.bn3.weight == 0) and torch.all(b.bn1.weight == 1) for b in blocks)
    assert all(m.momentum == 0.05 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_small_image_models_output_shapes():
    x = torch.randn(3, 1, 28, 28)
    assert build_model("lenet", num_classes=10, in_channels=1)(x).shape == (3, 10)
    assert build_model("cifar_resnet20", num_classes=10, in_channels=1)(x).shape == (3, 10)
