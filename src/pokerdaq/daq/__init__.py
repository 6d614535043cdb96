"""pokerdaq.daq"""
