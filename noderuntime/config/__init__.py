"""Node configuration: the validated node.yaml value object, peer URLs, where things live."""
