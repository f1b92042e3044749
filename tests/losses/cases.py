"""The table that drives the generic tests in test_common.py.

Each case gives a loss (as a factory of `axis_name`), an input builder, the independent
numpy reference from reference.py, which arguments are float (cast to bf16), which get
gradients, and the shard_map in_specs (None for per-example losses without axis_name).
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jssl import losses
from tests.losses import reference

P = jax.sharding.PartitionSpec
B = 16  # divisible by the 8 fake devices
D = P("data")
R = P()


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Any], Callable]  # axis_name -> fn(*arrays) -> (loss, metrics)
    build: Callable[[], tuple]
    ref: Callable[..., float]
    float_args: tuple
    grad_args: tuple
    specs: tuple | None = None
    bf16_tol: float = 5e-2

    def __repr__(self):
        return self.name


# Inputs come from numpy: jax.random would compile a fresh threefry kernel per shape,
# which costs seconds each on a 2-core CPU.
def _normal(seed, *shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _bernoulli(seed, p, shape):
    return np.random.default_rng(seed).random(shape) < p


def _randint(seed, shape, hi):
    return jnp.asarray(np.random.default_rng(seed).integers(0, hi, shape), jnp.int32)


def _pair(seed=0, n=B, d=8):
    z1 = _normal(seed, n, d)
    return z1, z1 + 0.5 * _normal(seed + 1, n, d)


_RNG = jax.random.key(42)
_BETAS = reference_betas = np.linspace(1e-4, 0.02, 50)
_AB = losses.alphas_cumprod(_BETAS)


def _w2v_build():
    t, d, g, v = 12, 8, 2, 5
    ctx = _normal(1, B, t, d)
    q = ctx + _normal(2, B, t, d)
    mask = _bernoulli(3, 0.5, (B, t))
    mask[:, :3] = True
    mask = jnp.asarray(mask)
    probs = jax.nn.softmax(_normal(4, B, t, g, v), -1)
    return ctx, q, mask, probs


def _w2v_ref(ctx, q, mask, probs):
    idx = np.asarray(losses.sample_distractors(jnp.asarray(mask), rng=_RNG, num_negatives=6))
    return reference.wav2vec2(ctx, q, np.asarray(mask), idx, probs)


def _mae_build():
    pred = _normal(1, B, 6, 12)
    target = _normal(2, B, 6, 12, scale=3.0) + 1.0
    mask = jnp.asarray(_bernoulli(3, 0.75, (B, 6)))
    return pred, target, mask


def _tokens_build():
    logits = _normal(1, B, 5, 11, scale=2.0)
    labels = _randint(2, (B, 5), 11)
    mask = _bernoulli(3, 0.4, (B, 5))
    mask[:, 1] = True
    mask = jnp.asarray(mask)
    return logits, labels, mask


def _ddpm_build():
    x0 = _normal(1, B, 4, 3)
    noise = _normal(2, B, 4, 3)
    out = noise + 0.3 * _normal(3, B, 4, 3)
    t = _randint(4, (B,), 50)
    return out, x0, noise, t


def _vae_build(bernoulli):
    x = _normal(1, B, 6)
    if bernoulli:
        x = jax.nn.sigmoid(3 * x)
    return (_normal(2, B, 6), x, _normal(3, B, 3), _normal(4, B, 3, scale=0.5))


CASES = [
    Case(
        "nt_xent",
        lambda ax: functools.partial(losses.nt_xent, temperature=0.2, axis_name=ax),
        _pair,
        lambda a, b: reference.nt_xent(a, b, 0.2)[0],
        (0, 1),
        (0, 1),
        (D, D),
    ),
    Case(
        "nt_xent_blockwise",
        lambda ax: functools.partial(losses.nt_xent, temperature=0.2, axis_name=ax, block_size=12),
        _pair,
        lambda a, b: reference.nt_xent(a, b, 0.2)[0],
        (0, 1),
        (0, 1),
        (D, D),
    ),
    Case(
        "info_nce_in_batch",
        lambda ax: functools.partial(losses.info_nce, axis_name=ax),
        _pair,
        reference.info_nce,
        (0, 1),
        (0, 1),
        (D, D),
    ),
    Case(
        "info_nce_queue",
        lambda ax: lambda q, k, neg: losses.info_nce(q, k, negatives=neg, axis_name=ax, temperature=0.07, block_size=8),
        lambda: _pair() + (_normal(9, 20, 8),),
        lambda q, k, neg: reference.info_nce(q, k, neg, 0.07),
        (0, 1, 2),
        (0, 1),
        (D, D, R),
    ),
    Case("negative_cosine", lambda ax: losses.negative_cosine, _pair, reference.negative_cosine, (0, 1), (0,)),
    Case(
        "dino",
        lambda ax: lambda s, t, c: losses.dino(s, t, center=c),
        lambda: (_normal(1, 4, B, 10), _normal(2, 2, B, 10), _normal(3, 10, scale=0.1)),
        lambda s, t, c: reference.dino(s, t, np.asarray(c, np.float64)),
        (0, 1),
        (0,),
        bf16_tol=1e-1,
    ),
    Case(
        "dino_sinkhorn",
        lambda ax: lambda s, t, c: losses.dino(
            s, t, center=c, teacher_temperature=0.5, centering="sinkhorn_knopp", axis_name=ax
        ),
        lambda: (_normal(4, 4, B, 10), _normal(5, 2, B, 10), _normal(6, 10, scale=0.1)),
        lambda s, t, c: reference.dino_sinkhorn(s, t, tt=0.5),
        (0, 1),
        (0,),
        (P(None, "data"), P(None, "data"), R),
        bf16_tol=1e-1,
    ),
    Case(
        "vicreg",
        lambda ax: functools.partial(losses.vicreg, axis_name=ax),
        _pair,
        reference.vicreg,
        (0, 1),
        (0, 1),
        (D, D),
    ),
    Case(
        "barlow_twins",
        lambda ax: functools.partial(losses.barlow_twins, axis_name=ax),
        _pair,
        reference.barlow_twins,
        (0, 1),
        (0, 1),
        (D, D),
    ),
    Case(
        "swav",
        lambda ax: lambda s: losses.swav(s, axis_name=ax),
        lambda: (jnp.tanh(_normal(1, 4, B, 6)),),
        reference.swav,
        (0,),
        (0,),
        (P(None, "data"),),
    ),
    Case(
        "swav_queue",
        lambda ax: lambda s, q: losses.swav(s, queue_scores=q, axis_name=ax),
        lambda: (jnp.tanh(_normal(1, 3, B, 6)), jnp.tanh(_normal(2, 2, 8, 6))),
        lambda s, q: reference.swav(s, queue=q),
        (0, 1),
        (0,),
        (P(None, "data"), P(None, "data")),
    ),
    Case(
        "mae",
        lambda ax: functools.partial(losses.mae, axis_name=ax),
        _mae_build,
        lambda p, t, m: reference.mae(p, t, np.asarray(m)),
        (0, 1),
        (0,),
        (D, D, D),
    ),
    Case(
        "mae_no_norm",
        lambda ax: functools.partial(losses.mae, norm_pix=False, axis_name=ax),
        _mae_build,
        lambda p, t, m: reference.mae(p, t, np.asarray(m), False),
        (0, 1),
        (0,),
        (D, D, D),
    ),
    Case("denoising", lambda ax: losses.denoising, _pair, reference.denoising, (0, 1), (0,)),
    Case(
        "masked_lm",
        lambda ax: functools.partial(losses.masked_lm, axis_name=ax),
        _tokens_build,
        lambda l, y, m: reference.masked_lm(l, y, np.asarray(m)),
        (0,),
        (0,),
        (D, D, D),
    ),
    Case(
        "next_token",
        lambda ax: lambda l, y, m: losses.next_token(l, y, mask=m, axis_name=ax),
        _tokens_build,
        lambda l, y, m: reference.next_token(l, y, np.asarray(m)),
        (0,),
        (0,),
        (D, D, D),
    ),
    Case(
        "cpc",
        lambda ax: functools.partial(losses.cpc, axis_name=ax),
        lambda: (_normal(1, B, 7, 5), _normal(2, B, 7, 4), _normal(3, 3, 5, 4, scale=0.5)),
        reference.cpc,
        (0, 1, 2),
        (0, 1, 2),
        (D, D, R),
    ),
    Case(
        "wav2vec2",
        lambda ax: (
            lambda c, q, m, p: losses.wav2vec2(c, q, m, rng=_RNG, codebook_probs=p, num_negatives=6, axis_name=ax)
        ),
        _w2v_build,
        _w2v_ref,
        (0, 1, 3),
        (0, 1, 3),
        (D, D, D, D),
    ),
    Case(
        "vae_elbo_bernoulli",
        lambda ax: losses.vae_elbo,
        functools.partial(_vae_build, True),
        reference.vae_elbo,
        (0, 1, 2, 3),
        (0, 2, 3),
    ),
    Case(
        "vae_elbo_gaussian_beta4",
        lambda ax: functools.partial(losses.vae_elbo, beta=4.0, likelihood="gaussian"),
        functools.partial(_vae_build, False),
        lambda *a: reference.vae_elbo(*a, beta=4.0, likelihood="gaussian"),
        (0, 1, 2, 3),
        (0, 2, 3),
    ),
    Case(
        "ddpm_epsilon",
        lambda ax: functools.partial(losses.ddpm, alphas_cumprod=_AB),
        _ddpm_build,
        lambda o, x, n, t: reference.ddpm(o, x, n, t, _BETAS),
        (0, 1, 2),
        (0,),
    ),
    Case(
        "ddpm_v",
        lambda ax: functools.partial(losses.ddpm, alphas_cumprod=_AB, prediction="v"),
        _ddpm_build,
        lambda o, x, n, t: reference.ddpm(o, x, n, t, _BETAS, "v"),
        (0, 1, 2),
        (0,),
    ),
]
