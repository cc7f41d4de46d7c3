"""Evaluation arithmetic on hand-made numbers: softmax-then-average over views, top-k, per-class
accuracy, confusion matrix, and the merge of per-rank results."""
import math

import pytest
import torch

from tdsclip.engine.evaluation import (ViewAccumulator, average_view_probs, confusion_matrix, summarise,
                                       topk_correct)


def test_multi_view_average_is_of_softmax_not_logits():
    # video 0: one very confident wrong view (class 0) and two mildly right ones (class 1).
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    probs = average_view_probs(logits)
    e = math.e
    p_view_b = torch.tensor([1, e, 1]) / (2 + e)
    p_view_a = torch.softmax(torch.tensor([10.0, 0, 0]), 0)
    expected = (p_view_a + 2 * p_view_b) / 3
    assert torch.allclose(probs[0], expected, atol=1e-6)
    assert probs[0].argmax() == 0                               # softmax average: the sure view wins
    assert torch.softmax(logits.mean(1), -1)[0].argmax() == 0  # (mean logits would say the same here)
    # ...but with the sure view less extreme, averaging probabilities and averaging logits differ:
    logits = torch.tensor([[[3.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    assert average_view_probs(logits)[0].argmax() == 1        # probs: (0.95+0.27+0.27)/3 vs ...
    assert torch.softmax(logits.mean(1), -1)[0].argmax() == 0  # logits: 1.0 vs 0.67


def test_view_accumulator_groups_views_by_video_in_any_order():
    acc = ViewAccumulator(num_classes=3)
    logits = torch.tensor([[0.0, 5.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 4.0, 0.0]])
    acc.add_views(logits, torch.tensor([1, 0, 0, 1]), torch.tensor([7, 3, 3, 7]))
    ids, probs, labels, views = acc.result()
    assert ids.tolist() == [3, 7] and labels.tolist() == [0, 1] and views.tolist() == [2, 2]
    assert torch.allclose(probs[0], (torch.softmax(logits[1], 0) + torch.softmax(logits[2], 0)) / 2)
    assert torch.allclose(probs.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="two labels"):
        acc.add_views(logits[:1], torch.tensor([2]), torch.tensor([7]))


def test_grouped_views_and_rank_merge_equal_the_single_process_result():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 5, generator=g)  # 6 videos x 4 views
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    whole = ViewAccumulator(5)
    whole.add_grouped(logits, labels, torch.arange(6))
    # two "ranks", each holding half the views of every video
    r0, r1 = ViewAccumulator(5), ViewAccumulator(5)
    r0.add_grouped(logits[:, :2], labels, torch.arange(6))
    r1.add_grouped(logits[:, 2:], labels, torch.arange(6))
    merged = ViewAccumulator(5)
    merged.merge(r0.state())
    merged.merge(r1.state())
    a, b = whole.result(), merged.result()
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1]) and torch.equal(a[3], b[3])
    assert torch.allclose(a[1], average_view_probs(logits))


def test_topk_and_summary_on_a_hand_made_case():
    probs = torch.tensor([
        [0.7, 0.2, 0.1],   # label 0: top-1 hit
        [0.5, 0.4, 0.1],   # label 1: top-1 miss, top-2 hit
        [0.1, 0.3, 0.6],   # label 2: hit
        [0.3, 0.5, 0.2],   # label 2: miss (and not in the top 2)
    ])
    labels = torch.tensor([0, 1, 2, 2])
    assert topk_correct(probs, labels, (1, 2, 5)) == {1: 2, 2: 3, 5: 4}  # k capped at 3 classes
    cm = confusion_matrix(probs.argmax(1), labels, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    s = summarise(probs, labels, ["a", "b", "c"])
    assert s["top1"] == 50.0 and s["top5"] == 100.0 and s["num_videos"] == 4
    assert s["per_class"] == {"a": {"top1": 100.0, "support": 1}, "b": {"top1": 0.0, "support": 1},
                              "c": {"top1": 50.0, "support": 2}}
    assert s["mean_class_top1"] == pytest.approx(50.0)
    assert s["confusion_matrix"] == cm.tolist()
    with pytest.raises(ValueError, match="no videos"):
        summarise(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
