"""The command side: commands, queries and the ports they need (issue 13 moves the rest here)."""
