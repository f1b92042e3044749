"""Tests of the launchers in launch/ and of the Dockerfile."""
