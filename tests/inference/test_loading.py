import pytest

from rlar.errors import DataError
from rlar.inference.loading import load_trained_model


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(DataError, match="notes.pt"):
        load_trained_model(bogus)
