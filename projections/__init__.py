"""What the events mean: pure folds and views. No I/O; `now` is always passed in."""
