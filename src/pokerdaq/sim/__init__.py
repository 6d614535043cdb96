"""pokerdaq.sim"""
