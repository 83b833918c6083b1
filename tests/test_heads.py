"""Which SCAN head is kept: the one that agrees best with the others (issue 12, item 2)."""
import numpy as np
import pytest

from scan_core.method.clustering import choose_head, head_agreement

# head 0 and head 1 are the same partition of four images (ids swapped); head 2 cuts across them.
# ARI(h0, h2) by hand: contingency all ones -> sum C(n_ij, 2) = 0; rows and columns each sum to 2
# -> sum C(a_i, 2) = sum C(b_j, 2) = 2; expected = 2 * 2 / C(4, 2) = 2/3; max = 2;
# ARI = (0 - 2/3) / (2 - 2/3) = -1/2. ARI(h0, h1) = 1.
CLUSTERS = np.array([[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1]])


def test_agreement_is_the_mean_ari_with_the_other_heads():
    np.testing.assert_allclose(head_agreement(CLUSTERS), [(1 - 0.5) / 2, (1 - 0.5) / 2, -0.5])


def test_the_head_kept_agrees_most_and_ties_go_to_the_lower_loss():
    # head 2 has the lowest held-out loss (SCAN's rule would keep it) but disagrees with the rest
    head, agreement = choose_head(CLUSTERS, np.array([0.5, 0.2, 0.0]))
    assert head == 1
    head, _ = choose_head(CLUSTERS, np.array([0.1, 0.2, 0.0]))
    assert head == 0


def test_one_head_is_kept_as_it_is():
    head, agreement = choose_head(CLUSTERS[:1], np.array([3.0]))
    assert head == 0 and agreement.tolist() == [1.0]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="H >= 2"):
        head_agreement(CLUSTERS[:1])
    with pytest.raises(ValueError, match="3 heads' clusters but 2 losses"):
        choose_head(CLUSTERS, np.array([0.1, 0.2]))
