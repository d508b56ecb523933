import torch

from train.losses import MSECorrLoss, pearson


def test_perfect_correlation_leaves_only_mse():
    target = torch.tensor([0.1, 0.4, 0.5, 0.9])
    pred = target * 0.5 + 0.2
    loss = MSECorrLoss(alpha=2.0)(pred, target)
    assert torch.isclose(loss, torch.mean((pred - target) ** 2), atol=1e-5)


def test_anticorrelation_is_penalised_by_alpha():
    target = torch.tensor([0.1, 0.4, 0.5, 0.9])
    pred = 1.0 - target
    mse = torch.mean((pred - target) ** 2)
    assert torch.isclose(MSECorrLoss(alpha=0.5)(pred, target), mse + 0.5 * 2.0, atol=1e-4)
    assert torch.isclose(MSECorrLoss(alpha=0.0)(pred, target), mse)


def test_constant_batches_give_finite_loss_and_gradients():
    for pred, target in [(torch.full((8,), 0.3), torch.rand(8)), (torch.rand(8), torch.full((8,), 0.7)),
                         (torch.tensor([0.5]), torch.tensor([0.2]))]:
        pred = pred.clone().requires_grad_(True)
        loss = MSECorrLoss()(pred, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
        assert abs(float(pearson(pred.detach(), target))) < 1e-6
