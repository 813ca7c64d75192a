"""Names of the decoder state entries, shared by the exporter and the manifest."""


def decoder_state_names(model_config: dict) -> list[str]:
    return ["hidden", "feed"] + (["cell"] if model_config["rnn_type"] == "lstm" else [])
