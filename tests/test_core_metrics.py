import torch

from ufer import metrics


def test_metrics_on_hand_computed_confusion():
    # true:  0 0 0 1 1 2      pred: 0 1 0 1 1 0
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 0, 1, 1, 0])
    conf = metrics.confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics.accuracy(conf) == 4 / 6
    # per class: 2/3, 2/2, 0/1 -> mean (2/3 + 1 + 0) / 3 = 5/9
    assert torch.allclose(metrics.per_class_accuracy(conf), torch.tensor([2 / 3, 1.0, 0.0],
                                                                        dtype=torch.float64))
    assert abs(metrics.mean_class_accuracy(conf) - 5 / 9) < 1e-12


def test_mean_class_accuracy_skips_absent_classes():
    conf = metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), 3)
    assert metrics.mean_class_accuracy(conf) == 0.5  # only class 0 has samples
