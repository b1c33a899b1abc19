"""What an audit is made of: suite and targets files (checked and typed), attack templates, labelled sets,
examples and public behaviour sets."""
