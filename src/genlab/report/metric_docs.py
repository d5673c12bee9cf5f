"""What each evaluation number measures, and which way is better.

``METRIC_DOCS[name] = (direction, one-line description)``. ``direction`` is
``"max"`` (higher is better), ``"min"`` (lower is better), a float target (best
is closest to it, e.g. a two-sample classifier's accuracy at chance, 0.5) or
``None`` (no universal ordering: the report does not highlight a best value).

Keys are the names metrics write into ``eval.json``; a namespaced key such as
``"prdc/recall"`` or ``"eval/modes"`` is looked up by its last segment too.
"""

from __future__ import annotations

Direction = str | float | None

METRIC_DOCS: dict[str, tuple[Direction, str]] = {
    "fid": ("min", "Frechet Inception Distance: distance between Gaussians fitted to feature "
                   "embeddings of real and generated samples (arXiv 1706.08500)."),
    "kid": ("min", "Kernel Inception Distance: unbiased squared MMD with a cubic polynomial "
                   "kernel on feature embeddings; unbiased at small n (arXiv 1801.01401)."),
    "is": ("max", "Inception Score: exp E[KL(p(y|x) || p(y))]; confident and varied class "
                  "predictions score high (arXiv 1606.03498)."),
    "precision": ("max", "Precision (PRDC): share of generated samples inside the k-NN manifold "
                         "of real data, i.e. fidelity (arXiv 1904.06991, 2002.09797)."),
    "recall": ("max", "Recall (PRDC): share of real samples inside the k-NN manifold of "
                      "generated data, i.e. diversity (arXiv 1904.06991)."),
    "density": ("max", "Density (PRDC): how many real-sample k-NN balls contain each generated "
                       "sample, on average; about 1 for matching distributions (arXiv 2002.09797)."),
    "coverage": ("max", "Coverage (PRDC): share of real samples whose k-NN ball contains at least "
                        "one generated sample (arXiv 2002.09797)."),
    "msssim": (None, "Mean MS-SSIM between pairs of generated images: lower means more varied "
                     "samples; compare with the data's own value (arXiv 1610.09585)."),
    "mmd": ("min", "Maximum mean discrepancy between real and generated samples under a fixed "
                   "kernel; 0 when the distributions match (Gretton et al. 2012)."),
    "c2st": (0.5, "Classifier two-sample test: held-out accuracy of a classifier telling real "
                  "from generated; 0.5 (chance) is best (arXiv 1610.06545)."),
    "memorization": ("min", "Memorisation: share of generated samples closer to a training point "
                            "than typical held-out data is, i.e. near-copies of the training set."),
    "modes": ("max", "Modes captured: mixture components that are the nearest mode of at least "
                     "one high-quality sample (VEEGAN protocol, arXiv 1705.07761)."),
    "hq_percent": ("max", "High-quality samples: percent of samples within 3 standard deviations "
                          "of their nearest mode (arXiv 1705.07761)."),
    "reverse_kl": ("min", "Reverse KL from the histogram of high-quality samples over modes to "
                          "uniform; 0 when all modes are equally covered (arXiv 1712.04086)."),
    "bpd": ("min", "Bits per dimension: negative test log-likelihood in base 2 divided by the "
                   "number of dimensions (discrete data, after dequantisation)."),
    "ais": ("max", "Annealed importance sampling estimate of the test log-likelihood, in nats "
                   "(a stochastic lower bound; arXiv 1611.04273)."),
    "iwae": ("max", "Importance-weighted bound on the test log-likelihood with K samples, in "
                    "nats; tightens as K grows (arXiv 1509.00519)."),
    "critic": ("min", "Independent critic: a fresh critic trained after the fact to separate "
                      "samples from held-out data; its divergence estimate (arXiv 1705.05263)."),
    # the keys genlab's metrics actually write (see genlab/metrics/*.py)
    "critic_w": ("min", "Independent Wasserstein critic: E_data f - E_model f for a fresh WGAN-GP "
                        "critic trained on half the samples, scored on the other half; a lower bound "
                        "on W1 in data-space units, 0 is best (arXiv 1705.05263)."),
    "critic_w_train": ("min", "The independent critic's estimate on its own training halves; a large "
                              "excess over critic_w means the critic overfits."),
    "c2st_acc": (0.5, "Classifier two-sample test accuracy on held-out real vs generated "
                      "samples; 0.5 (chance) means indistinguishable (arXiv 1610.06545)."),
    "c2st_pvalue": ("max", "C2ST one-sided binomial p-value of the held-out accuracy under 'same "
                           "distribution'; small (< 0.05) means distinguishable."),
    "mmd2": ("min", "Unbiased squared MMD, RBF kernel with median-heuristic bandwidth; 0 when the "
                    "distributions match (Gretton et al. 2012, arXiv 0805.2368)."),
    "mmd_pvalue": ("max", "Permutation-test p-value of the MMD two-sample test; small (< 0.05) means "
                          "the generated samples are distinguishable from data."),
    "memorized_frac": ("min", "Share of generated samples closer to a training point than the 5th "
                              "percentile of held-out data's distances; about 0.05 means no copying."),
    "memorized_ratio": ("min", "memorized_frac divided by the quantile: about 1 for a model that "
                               "generalises like held-out data, larger when it copies training points."),
    "msssim_real": (None, "Mean MS-SSIM between pairs of real images: the reference value for msssim "
                          "(arXiv 1610.09585)."),
    "ais_log_px": ("max", "AIS estimate of the mean test log-likelihood in nats (a stochastic lower "
                          "bound; decoders get a Gaussian observation model; arXiv 1611.04273)."),
    "ais_bpd": ("min", "Bits per dimension from the AIS log-likelihood estimate (arXiv 1611.04273)."),
    "ais_accept": (None, "Mean HMC acceptance rate of the AIS chains (a diagnostic, not a score)."),
    "ais_n": (None, "Number of test examples the AIS estimate used."),
    "iwae_log_px": ("max", "Importance-weighted bound on the mean test log-likelihood in nats with "
                           "k samples; tightens as k grows (arXiv 1509.00519)."),
    "iwae_bpd": ("min", "Bits per dimension from the IWAE bound (arXiv 1509.00519)."),
    "iwae_k": (None, "Number of importance samples per example in the IWAE bound."),
    "nll": ("min", "Negative test log-likelihood per example, in nats."),
    "elbo": ("max", "Evidence lower bound on the test log-likelihood, in nats (arXiv 1312.6114)."),
    "latent_mmd2": ("min", "MMD^2 between the aggregate posterior (one code per test example) and the "
                           "prior; 0 when they match (arXiv 1802.06847)."),
    "latent_mmd_pvalue": ("max", "Permutation p-value of the latent MMD test; small (< 0.05) means the "
                                 "aggregate posterior visibly misses the prior."),
    "latent_c2st_acc": (0.5, "C2ST accuracy separating posterior codes from prior codes; 0.5 means they "
                             "match (arXiv 1802.06847)."),
    "latent_c2st_pvalue": ("max", "One-sided binomial p-value of the latent C2ST accuracy."),
    "classify_error": ("min", "Test error (fraction) of the model's own classifier q(y|x) (M2, arXiv 1406.5298)."),
    "probe_error": ("min", "Test error (fraction) of a logistic regression fitted on the posterior means of the "
                           "labelled training examples (M1, arXiv 1406.5298)."),
    # human evaluation: genlab hype report -> genlab compare --hype (docs/human.md)
    "hype_inf": ("max", "HYPE-infinity from human raters: percent of real and generated images misjudged "
                        "with unlimited viewing time; 50 = indistinguishable (arXiv 1904.01121)."),
    "hype_time": ("max", "HYPE-time from human raters: mean modal exposure (ms) of an adaptive staircase "
                         "holding raters at 75% correct; longer = more realistic (arXiv 1904.01121)."),
    "hype_inf_simulated": ("max", "HYPE-infinity from SIMULATED raters (a script, not people): tests the "
                                  "pipeline, says nothing about human perception."),
    "hype_time_simulated": ("max", "HYPE-time from SIMULATED raters (a script, not people): tests the "
                                   "pipeline, says nothing about human perception."),
}

#: ``k_lo``/``k_hi``/``k_se`` whose ``k`` is not itself a key bound another metric.
ERROR_BASE_ALIASES: dict[str, str] = {"critic": "critic_w"}


def lookup(key: str) -> tuple[Direction, str] | None:
    """The ``(direction, description)`` for ``key`` or its last ``/``-segment, else ``None``."""
    for candidate in (key, key.rsplit("/", 1)[-1]):
        if candidate in METRIC_DOCS:
            return METRIC_DOCS[candidate]
    return None
