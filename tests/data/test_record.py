from rlar.data.record import listing


def test_listing_truncates_with_a_count():
    assert listing(["a", "b"]) == "a, b"
    assert listing([str(i) for i in range(12)], limit=3) == "0, 1, 2, ... (9 more)"
