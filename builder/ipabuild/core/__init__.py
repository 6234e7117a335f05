"""Shared plumbing, used by more than one stage and importing none: errors with their exit
statuses, external commands as argv lists, tables, host-wide locks, progress reporters,
files read with line numbers (text and YAML), resolver options, host facts from /proc and
the IDs derived from names. Takes nothing from the pipeline; gives every stage its tools.
"""
