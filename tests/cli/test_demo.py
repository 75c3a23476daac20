"""``rlar demo`` end to end at a toy size: both methods train and are scored against readers and truth."""

from rlar.cli.main import main


def test_demo_prints_both_methods_against_readers_and_truth(tmp_path, capsys):
    sets = ["optim.epochs=1", "data.options.n_cases=20", "data.image_size=[32, 32]", "optim.batch_size=4",
            "data.n_folds=2"]
    argv = ["demo", "--out", str(tmp_path), "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for row in ("vanilla_mtl vs readers", "vanilla_mtl vs truth", "rlar vs readers", "rlar vs truth"):
        assert row in out
    assert "held-out test fold" in out  # the numbers are the test side's, not the selection split's
    assert (tmp_path / "curves.png").is_file()
    for method in ("vanilla_mtl", "rlar"):
        assert (tmp_path / method / "metrics.json").is_file()
        assert (tmp_path / method / "splits.json").is_file()
        assert (tmp_path / method / "predictions_test.csv").is_file()
    # The demo ends as a user goes on: the RLAR model reports on held-out phantom PNGs, and the folder is printed.
    predictions = tmp_path / "rlar" / "predictions"
    assert "predictions of 3 held-out phantom images" in out
    assert str(predictions) in out
    assert len(list((tmp_path / "rlar" / "example_images").glob("*.png"))) == 3
    assert len(list(predictions.rglob("*.html"))) == 3
    assert (predictions / "predictions.csv").is_file()
