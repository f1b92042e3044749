"""Independent float64 numpy references for jssl.losses.

Written from the papers' equations, deliberately loop-based and without sharing any code
with the implementation, so that agreement is evidence rather than tautology.
"""

import math

import numpy as np


def _normalize(x):
  x = np.asarray(x, np.float64)
  out = np.empty_like(x)
  for i in range(x.shape[0]):
    out[i] = x[i] / max(math.sqrt(float(np.dot(x[i], x[i]))), 1e-12)
  return out


def _log_softmax_at(logits, target):
  m = max(logits)
  lse = m + math.log(sum(math.exp(v - m) for v in logits))
  return logits[target] - lse


def nt_xent(z1, z2, temperature=0.1):
  """SimCLR Eq. (1), averaged over all 2N anchors (l(2k-1, 2k) + l(2k, 2k-1))."""
  z = np.concatenate([_normalize(z1), _normalize(z2)])
  n2 = z.shape[0]
  n = n2 // 2
  total, correct = 0.0, 0
  for i in range(n2):
    pos = (i + n) % n2
    cands = [j for j in range(n2) if j != i]
    logits = [float(np.dot(z[i], z[j])) / temperature for j in cands]
    t = cands.index(pos)
    total -= _log_softmax_at(logits, t)
    correct += int(np.argmax(logits) == t)
  return total / n2, {"contrastive_accuracy": correct / n2}
