"""Operations, beneath every other layer: settings, metrics, logging, process-wide policy
and the model choice the worker processes of one server share."""
