"""Every figure ban draws, in one place, on one matplotlib helper (`plotting`).

`detection`: BAN's histograms, mask and t-SNE (Figure 1) from a verdict; `triggers`: recovered
triggers as image grids; `bench`: a benchmark report's ROC curves and heatmaps; `preview`: what an
attack's trigger looks like on real images.
"""
