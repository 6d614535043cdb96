"""pokerdaq.hil"""
