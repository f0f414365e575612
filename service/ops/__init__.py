"""Operations, beneath every other layer: settings, metrics, logging, process-wide policy,
and what the worker processes of one server share: the model choices (`model_choice`) and
the drift counts (`shared_counts`)."""
