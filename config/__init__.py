"""The lab's data, installed with the code as the package `labhub_config`: the example lab config, the service
templates, the arm profiles and the rubrics. This folder stays their one source; code finds them through
`importlib.resources`, so a checkout, an editable install and a wheel read the same files."""
