import pytest
import torch

from hpcsgd.models import build_model
from hpcsgd.models.resnet import Bottleneck


@pytest.mark.parametrize("name, classes, params", [
    ("resnet50", 1000, 25_557_032),   # He et al. / torchvision
    ("resnet18", 1000, 11_689_512),
    ("resnet101", 1000, 44_549_160),
    ("lenet", 10, 431_080),           # Caffe LeNet: 20*25+20 + 50*500+50 + 800*500+500 + 5010
    ("alexnet", 1000, 60_965_224),    # Caffe bvlc_alexnet (grouped conv2/4/5)
    # AlexNet-BN: minus the 1,376 conv and 8,192 fc6/fc7 biases, plus 2 x 9,568 BN parameters
    ("alexnet_bn", 1000, 60_965_224 - 1_376 - 8_192 + 19_136),
    # Zaremba small: embedding 10000x200, 2 LSTM layers of 4 x (200x200 x 2 + 2 x 200), decoder
    ("lstm_lm", 10000, 2_000_000 + 2 * 4 * (80_000 + 400) + 2_010_000),
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


def test_alexnet_shapes_on_caffe_and_torch_crops():
    for name in ("alexnet", "alexnet_bn"):
        model = build_model(name, num_classes=1000).eval()
        assert model(torch.randn(2, 3, 227, 227)).shape == (2, 1000)  # Caffe's crop
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert not any(isinstance(m, torch.nn.LocalResponseNorm)
                   for m in build_model("alexnet_bn", num_classes=10).modules())


def test_lstm_language_model_output_and_state():
    model = build_model("lstm_lm", num_classes=50, size="small")
    tokens = torch.randint(0, 50, (3, 7))
    logits, (h, c) = model(tokens)
    assert logits.shape == (3, 7, 50) and h.shape == c.shape == (2, 3, 200)
