"""One module per subcommand, each exposing a click command named `cli`.

They are thin: parse options, check inputs, open files, call the library code.
"""
