"""Training code for facegate's quality models: labels, data, loss, fitting, release."""
