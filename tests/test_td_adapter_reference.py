"""The TD-Adapter reference against its formula (docs/model.md §3) written out by hand (float64), values and
gradients. Guards the reference itself: torch's CPU BatchNorm3d backward mis-handles some strided
5-D gradients, which once made the reference's gradients wrong while its values were right."""
import torch
import torch.nn.functional as F

from tds_kernels.ops.td_adapter.module import TDAdapter


def _formula(u, a: TDAdapter):
    """docs/model.md §3 TD-Adapter on tokens (B, T, N, d) with train-mode BN, no nn layers involved."""
    def bn(x, w, b):  # x (..., C): batch statistics over every token
        mu = x.mean(dim=(0, 1, 2))
        var = x.var(dim=(0, 1, 2), unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b

    b = bn(u @ a.down.weight.view(a.hidden, a.dim).t(), a.bn1.weight, a.bn1.bias)
    k = a.kernel_size
    pooled = F.max_pool1d(b.permute(0, 2, 3, 1).reshape(-1, 1, b.shape[1]), k, 1, k // 2)
    m = b - pooled.reshape(b.shape[0], b.shape[2], b.shape[3], b.shape[1]).permute(0, 3, 1, 2)
    y = 0.5 * m + 0.5 * m.mean(-1, keepdim=True)
    y = bn(y @ a.up.weight.view(a.dim, a.hidden).t(), a.bn2.weight, a.bn2.bias)
    return u + u * (torch.sigmoid(y) - 0.5)


def test_reference_gradients_match_the_formula():
    a = TDAdapter(32, reduction=4, backend="reference").double().train()
    with torch.no_grad():
        for bn in (a.bn1, a.bn2):
            bn.weight.uniform_(-1, 1)
            bn.bias.uniform_(-1, 1)
    u = torch.randn(2, 4, 5, 32, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 4, 5, 32, dtype=torch.float64)
    out = a(u)
    grads = torch.autograd.grad(out, [u, *a.parameters()], g)
    u2 = u.detach().clone().requires_grad_(True)
    ref = _formula(u2, a)
    ref_grads = torch.autograd.grad(ref, [u2, *a.parameters()], g)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for name, x, y in zip(["u"] + [n for n, _ in a.named_parameters()], grads, ref_grads):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-9, msg=f"gradient of {name}")
