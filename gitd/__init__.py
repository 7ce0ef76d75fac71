"""The git front door: SSH (Twisted conch) and smart-HTTP transports over one
dulwich receive handler that hands pushed refs to the pre-receive pipeline."""
