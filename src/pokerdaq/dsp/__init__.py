"""pokerdaq.dsp"""
