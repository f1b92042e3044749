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


def _logsumexp(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def info_nce(q, k, negatives=None, temperature=0.2):
    q, k = _normalize(q), _normalize(k)
    n = q.shape[0]
    total = 0.0
    for i in range(n):
        if negatives is None:
            logits = [float(np.dot(q[i], k[j])) / temperature for j in range(n)]
            total -= logits[i] - _logsumexp(logits)
        else:
            neg = _normalize(negatives)
            logits = [float(np.dot(q[i], k[i])) / temperature]
            logits += [float(np.dot(q[i], neg[j])) / temperature for j in range(neg.shape[0])]
            total -= logits[0] - _logsumexp(logits)
    return total / n


def negative_cosine(p, z):
    p, z = _normalize(p), _normalize(z)
    return -sum(float(np.dot(p[i], z[i])) for i in range(p.shape[0])) / p.shape[0]


def _softmax(v):
    v = np.asarray(v, np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def dino(student, teacher, center, ts=0.1, tt=0.04):
    student = np.asarray(student, np.float64)
    teacher = np.asarray(teacher, np.float64)
    total, pairs = 0.0, 0
    for g in range(teacher.shape[0]):
        for v in range(student.shape[0]):
            if v == g:
                continue
            pair = 0.0
            for b in range(student.shape[1]):
                pt = _softmax((teacher[g, b] - center) / tt)
                ps = _softmax(student[v, b] / ts)
                pair -= float(np.sum(pt * np.log(ps)))
            total += pair / student.shape[1]
            pairs += 1
    return total / pairs


def dino_sinkhorn(student, teacher, ts=0.1, tt=0.04, iters=3):
    """DINOv2's teacher: Sinkhorn-Knopp of teacher / tt over both global crops jointly."""
    student = np.asarray(student, np.float64)
    teacher = np.asarray(teacher, np.float64)
    g, b, k = teacher.shape
    targets = sinkhorn_knopp(teacher.reshape(g * b, k), tt, iters).reshape(g, b, k)
    total, pairs = 0.0, 0
    for t in range(g):
        for v in range(student.shape[0]):
            if v == t:
                continue
            for i in range(b):
                total -= float(np.sum(targets[t, i] * np.log(_softmax(student[v, i] / ts)))) / b
            pairs += 1
    return total / pairs


def vicreg(z1, z2, sim=25.0, var=25.0, cov=1.0, eps=1e-4):
    z1 = np.asarray(z1, np.float64)
    z2 = np.asarray(z2, np.float64)
    n, d = z1.shape
    inv = float(np.mean((z1 - z2) ** 2))

    def terms(z):
        zc = z - z.mean(0)
        c = np.zeros((d, d))
        for i in range(d):
            for j in range(d):
                c[i, j] = sum(zc[b, i] * zc[b, j] for b in range(n)) / (n - 1)
        std = np.sqrt(np.diag(c) + eps)
        v = float(np.mean(np.maximum(0.0, 1.0 - std)))
        off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, off

    v1, c1 = terms(z1)
    v2, c2 = terms(z2)
    return sim * inv + var * (v1 + v2) / 2 + cov * (c1 + c2)


def barlow_twins(z1, z2, lambda_=5e-3, eps=1e-5):
    z1 = np.asarray(z1, np.float64)
    z2 = np.asarray(z2, np.float64)
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambda_ * c**2
    return loss


def sinkhorn_knopp(scores, eps=0.05, iters=3):
    """SwAV Algorithm 1 transcribed with explicit loops over rows and columns."""
    s = np.asarray(scores, np.float64)
    b, k = s.shape
    q = np.exp(s / eps).T  # [K, B]
    q /= q.sum()
    for _ in range(iters):
        for r in range(k):
            q[r] /= q[r].sum() * k
        for c in range(b):
            q[:, c] /= q[:, c].sum() * b
    return (q * b).T


def swav(scores, n_global=2, temperature=0.1, eps=0.05, iters=3, queue=None):
    s = np.asarray(scores, np.float64)
    v, b, k = s.shape
    total = 0.0
    for g in range(n_global):
        sc = s[g] if queue is None else np.concatenate([np.asarray(queue[g], np.float64), s[g]])
        q = sinkhorn_knopp(sc, eps, iters)[-b:]
        sub = 0.0
        for u in range(v):
            if u == g:
                continue
            for i in range(b):
                p = _softmax(s[u, i] / temperature)
                sub -= float(np.sum(q[i] * np.log(p))) / b
        total += sub / (v - 1)
    return total / n_global


def mae(pred, target, mask, norm_pix=True):
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    num, den = 0.0, 0.0
    for b in range(pred.shape[0]):
        for l in range(pred.shape[1]):
            t = target[b, l]
            if norm_pix:
                t = (t - t.mean()) / math.sqrt(t.var(ddof=1) + 1e-6)
            num += float(mask[b, l]) * float(np.mean((pred[b, l] - t) ** 2))
            den += float(mask[b, l])
    return num / den


def patchify(imgs, p):
    b, h, w, c = imgs.shape
    out = np.zeros((b, (h // p) * (w // p), p * p * c), imgs.dtype)
    for n in range(b):
        for i in range(h // p):
            for j in range(w // p):
                out[n, i * (w // p) + j] = imgs[n, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(-1)
    return out


def denoising(recon, clean):
    return float(np.mean((np.asarray(recon, np.float64) - np.asarray(clean, np.float64)) ** 2))


def token_ce(logits, labels, weights):
    logits = np.asarray(logits, np.float64)
    num, den = 0.0, 0.0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if weights[b, t]:
                num -= logits[b, t, labels[b, t]] - _logsumexp(list(logits[b, t]))
                den += 1
    return num / den


def masked_lm(logits, labels, mask):
    return token_ce(logits, labels, mask)


def next_token(logits, tokens, mask=None):
    w = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask, bool)
    return token_ce(np.asarray(logits)[:, :-1], tokens[:, 1:], w[:, 1:])


def cpc(context, future, weights, temperature=1.0, mask=None):
    c = np.asarray(context, np.float64)
    z = np.asarray(future, np.float64)
    w = np.asarray(weights, np.float64)
    b, t, _ = c.shape
    valid = np.ones((b, t), bool) if mask is None else np.asarray(mask, bool)
    total, count = 0.0, 0
    for k in range(1, w.shape[0] + 1):
        for i in range(b):
            for s in range(t - k):
                if not (valid[i, s] and valid[i, s + k]):
                    continue
                pred = w[k - 1].T @ c[i, s]
                # Negatives: the other sequences' latents at the same step, where they are real.
                others = [j for j in range(b) if j != i and valid[j, s + k]]
                logits = [float(z[j, s + k] @ pred) / temperature for j in [i] + others]
                total -= logits[0] - _logsumexp(logits)
                count += 1
    return total / count


def wav2vec2(context, quantized, mask, distractors, probs=None, temperature=0.1, alpha=0.1):
    """`distractors`: [B, T, K] time indices (sampling is tested separately)."""
    c = _normalize(np.asarray(context, np.float64).reshape(-1, context.shape[-1]))
    c = c.reshape(context.shape)
    qraw = np.asarray(quantized, np.float64)
    q = _normalize(qraw.reshape(-1, qraw.shape[-1])).reshape(qraw.shape)
    total, count = 0.0, 0
    for b in range(c.shape[0]):
        for t in range(c.shape[1]):
            if not mask[b, t]:
                continue
            logits = [float(c[b, t] @ q[b, t]) / temperature]
            for d in distractors[b, t]:
                if not np.array_equal(qraw[b, d], qraw[b, t]):
                    logits.append(float(c[b, t] @ q[b, d]) / temperature)
            total -= logits[0] - _logsumexp(logits)
            count += 1
    loss = total / count
    if probs is not None:
        # Averaged over the masked steps only (fairseq, HF transformers).
        p = np.asarray(probs, np.float64)[np.asarray(mask, bool)]
        avg = p.mean(0)
        g, v = avg.shape
        perp = 0.0
        for gi in range(g):
            perp += math.exp(-sum(a * math.log(a + 1e-7) for a in avg[gi]))
        loss += alpha * (g * v - perp) / (g * v)
    return loss


def vae_elbo(recon, x, mean, log_var, beta=1.0, likelihood="bernoulli"):
    r = np.asarray(recon, np.float64).reshape(x.shape[0], -1)
    xf = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    total = 0.0
    for b in range(xf.shape[0]):
        if likelihood == "bernoulli":
            p = 1 / (1 + np.exp(-r[b]))
            nll = -float(np.sum(xf[b] * np.log(p) + (1 - xf[b]) * np.log(1 - p)))
        else:
            nll = -float(np.sum(-0.5 * (xf[b] - r[b]) ** 2 - 0.5 * math.log(2 * math.pi)))
        kl = 0.0
        for mu, lv in zip(mean[b], log_var[b]):
            var = math.exp(lv)
            # KL(N(mu, var) || N(0, 1)) = 0.5 (var + mu^2 - 1 - log var)
            kl += 0.5 * (var + mu * mu - 1 - lv)
        total += nll + beta * kl
    return total / xf.shape[0]


def ddpm(out, x0, noise, t, betas, prediction="epsilon"):
    ab = 1.0
    abar = []
    for beta in betas:
        ab *= 1 - beta
        abar.append(ab)
    out = np.asarray(out, np.float64)
    total, count = 0.0, 0
    for b in range(out.shape[0]):
        a = abar[int(t[b])]
        if prediction == "epsilon":
            target = np.asarray(noise[b], np.float64)
        else:
            target = math.sqrt(a) * np.asarray(noise[b], np.float64) - math.sqrt(1 - a) * x0[b]
        total += float(np.sum((out[b] - target) ** 2))
        count += out[b].size
    return total / count
